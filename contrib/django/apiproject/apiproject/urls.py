from django.urls import path

from tv import views

urlpatterns = [
    path("api/channels/", views.ChannelList.as_view()),
    path("api/mychannels/", views.MyChannels.as_view()),
]

from django.urls import path

from blog import views

urlpatterns = [
    path("articles/", views.article_list, name="article-list"),
    path("articles/<int:pk>/", views.article_detail, name="article-detail"),
    path("tags/<slug:name>/", views.tag_detail, name="tag-detail"),
]

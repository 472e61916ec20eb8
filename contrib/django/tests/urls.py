from django.urls import include, path

from . import views

urlpatterns = [
    path("", include("testproject.urls")),
    path("t/count/", views.count),
    path("t/stream/", views.stream),
    path("t/existing/", views.existing),
    path("t/explicit/", views.explicit),
    path("t/decorated/<int:pk>/", views.decorated),
    path("t/many-keys/<int:n>/<int:size>/", views.many_keys),
    path("t/session/", views.session),
    path("t/write/", views.write),
    path("t/fail/", views.fail),
    path("t/async/", views.async_list),
]

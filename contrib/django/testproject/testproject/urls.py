from django.contrib.auth import views as auth_views
from django.urls import path

from blog import views

urlpatterns = [
    path("articles/", views.article_list, name="article-list"),
    path("articles/<int:pk>/", views.article_detail, name="article-detail"),
    path("tags/<slug:name>/", views.tag_detail, name="tag-detail"),
    # Django's own login form (CSRF token, session cookie): what bench's
    # -login-form logs in through (bench/login_test.go).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
]

from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("jira/", views.jira_issues, name="jira_issues"),
    path("accounts/login/", views.DemoLoginView.as_view(), name="login"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("atlassian/", include("atlassian_oauth.urls")),
    path("admin/", admin.site.urls),
]

from django.urls import path

from . import views

app_name = "atlassian_oauth"

urlpatterns = [
    path("", views.status, name="status"),
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("disconnect/", views.disconnect, name="disconnect"),
    path("site/", views.choose_site, name="choose_site"),
]

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    """The tenant's home page: which site this host is, who is logged in."""
    return render(request, "demo_site/home.html", {"site": request.site})

"""A runnable project that uses django-atlassian-oauth the way an integrator would."""

# Loading the Celery app with Django makes @shared_task use it (Celery's documented wiring).
from .celery import app as celery_app

__all__ = ["celery_app"]

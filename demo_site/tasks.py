"""A beat-driven task that shows the broker carries work from beat to the worker."""

from __future__ import annotations

import logging
import os
import time

from celery import shared_task
from django.conf import settings

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def heartbeat() -> None:
    """Record when, and which process (and its parent) ran the beat's last heartbeat."""
    path = settings.DEMO_VAR_DIR / "heartbeat"
    path.write_text(f"{time.time():.3f} {os.getpid()} {os.getppid()}\n")
    logger.info("Heartbeat from beat handled by worker pid %s", os.getpid())

"""Confidential inference: learned noise on a split model's activation, with measured leakage."""

from veil.privacy._obfuscator import IncompatibleObfuscator, Obfuscator
from veil.privacy._split import SplitModel, fingerprint, split_at
from veil.privacy._tasks import PrivacyTask, get_task, list_tasks, register_task

__all__ = [
    "IncompatibleObfuscator",
    "Obfuscator",
    "PrivacyTask",
    "SplitModel",
    "fingerprint",
    "get_task",
    "list_tasks",
    "register_task",
    "split_at",
]

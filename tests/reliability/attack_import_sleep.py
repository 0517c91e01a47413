"""A plugin module whose import blocks (a network call that never returns)."""

import time

time.sleep(30)

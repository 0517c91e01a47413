"""A plugin module whose import calls sys.exit."""

import sys

sys.exit("this plugin refuses to load")

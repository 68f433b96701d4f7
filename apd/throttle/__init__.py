"""The throttle check's parts: rules, counters, quota notices (plugins.md §throttle)."""

"""The scheduler: the process that keeps every ComfyUI worker busy, and the files it writes."""

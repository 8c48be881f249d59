"""The local stack: every server Conveyor needs, run under one supervisord (see manage.py)."""

"""The launcher: the `smartcommunity` command, `up` / `demo`, the supervisor and the local services.

It sits on top of every part (it imports their CLI verbs); nothing below imports it.
"""

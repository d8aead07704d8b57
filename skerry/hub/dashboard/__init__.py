"""The hub's read-only fleet dashboard: a JSON snapshot of the fleet, served over HTTPS with live updates.

``model`` turns the hub's live state into one plain-dict snapshot (pure,
tested without a server); ``server`` serves it (aiohttp, the hub's TLS
identity, operator client certificates or a bearer token) with Server-Sent
Events; ``static/`` is the page. Nothing here writes: there is no POST.
"""

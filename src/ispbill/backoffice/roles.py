"""Back-office permissions and the roles (groups) that bundle them (pure data).

Permissions live on the unmanaged ``backoffice.Access`` model, so they are checked as
``user.has_perm("backoffice.<codename>")``; a superuser has every one.
"""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "view_dashboard": "View the dashboard",
    "view_subscribers": "View subscribers, their ledger, invoices and payments",
    "change_subscribers": "Edit subscribers' details",
    "manage_status": "Suspend, restore, disable subscribers and exempt them from auto-suspension",
    "record_payments": "Record payments",
    "manage_billing": "Change packages, issue credit notes, void invoices, handle payment exceptions",
    "view_messages": "View SMS and email messages",
    "send_reminders": "Send reminders by hand",
    "manage_routers": "Manage routers",
    "manage_settings": "Change the ISP's settings and staff users",
    "import_subscribers": "Import subscribers from a spreadsheet",
    "view_audit": "View the audit log",
}

_READ = ["view_dashboard", "view_subscribers", "view_messages"]

ROLES: dict[str, list[str]] = {
    "admin": list(PERMISSIONS),
    "billing": [*_READ, "record_payments", "manage_billing"],
    "support": [
        *_READ, "change_subscribers", "manage_status", "send_reminders", "manage_routers", "import_subscribers",
    ],
    "viewer": list(_READ),
}

#: Django's own permissions the admin role also carries (staff users and groups).
ADMIN_AUTH_PERMISSIONS = [
    f"{action}_{model}" for model in ("user", "group") for action in ("view", "add", "change", "delete")
]

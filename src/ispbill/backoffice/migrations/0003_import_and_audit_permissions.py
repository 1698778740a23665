"""New permissions (spreadsheet import, the audit log) given to the roles that carry them."""

import importlib

from django.db import migrations

create_roles = importlib.import_module("ispbill.backoffice.migrations.0002_roles").create_roles


class Migration(migrations.Migration):

    dependencies = [
        ('backoffice', '0002_roles'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='access',
            options={'default_permissions': (), 'managed': False, 'permissions': [('view_dashboard', 'View the dashboard'), ('view_subscribers', 'View subscribers, their ledger, invoices and payments'), ('change_subscribers', "Edit subscribers' details"), ('manage_status', 'Suspend, restore, disable subscribers and exempt them from auto-suspension'), ('record_payments', 'Record payments'), ('manage_billing', 'Change packages, issue credit notes, void invoices, handle payment exceptions'), ('view_messages', 'View SMS and email messages'), ('send_reminders', 'Send reminders by hand'), ('manage_routers', 'Manage routers'), ('manage_settings', "Change the ISP's settings and staff users"), ('import_subscribers', 'Import subscribers from a spreadsheet'), ('view_audit', 'View the audit log')]},
        ),
        migrations.RunPython(create_roles, migrations.RunPython.noop),
    ]

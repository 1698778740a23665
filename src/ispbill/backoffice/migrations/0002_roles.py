"""Create the staff roles (groups) with their permissions.

The permission rows are created here rather than left to ``post_migrate`` so the groups
can be given them in the same run. Idempotent; ``ispbill createroles`` does the same.
"""

from django.db import migrations


def create_roles(apps, schema_editor):
    from ispbill.backoffice.roles import ADMIN_AUTH_PERMISSIONS, PERMISSIONS, ROLES

    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    ct, _ = ContentType.objects.get_or_create(app_label="backoffice", model="access")
    perms = {}
    for codename, name in PERMISSIONS.items():
        perms[codename], _ = Permission.objects.get_or_create(content_type=ct, codename=codename, defaults={"name": name})
    auth_perms = []
    for codename in ADMIN_AUTH_PERMISSIONS:
        model = codename.rsplit("_", 1)[1]
        auth_ct, _ = ContentType.objects.get_or_create(app_label="auth", model=model)
        perm, _ = Permission.objects.get_or_create(
            content_type=auth_ct, codename=codename, defaults={"name": f"Can {codename.replace('_', ' ')}"}
        )
        auth_perms.append(perm)
    for role, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.add(*(perms[c] for c in codenames))
        if role == "admin":
            group.permissions.add(*auth_perms)


class Migration(migrations.Migration):
    dependencies = [
        ("backoffice", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]

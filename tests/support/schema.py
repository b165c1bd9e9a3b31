"""The schema's head revision, in one place for every test that checks it.

Migrations are added on parallel branches and renumbered at merge; a test that
asserts the head takes it from here, so a renumbering changes one line.
"""

HEAD_REVISION = "0009"

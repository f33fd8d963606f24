"""message actions: what an edit, delete or reaction event concerns (an edit: the text it replaced), and the
edited/deleted marks on its target

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatbox.store.types import PortableJSON, UTCDateTime

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('target_external_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('reaction', PortableJSON, nullable=True))
        batch_op.add_column(sa.Column('previous_text', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('edited_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('deleted_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('deleted_at')
        batch_op.drop_column('edited_at')
        batch_op.drop_column('previous_text')
        batch_op.drop_column('reaction')
        batch_op.drop_column('target_external_id')

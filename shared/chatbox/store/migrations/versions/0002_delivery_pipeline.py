"""delivery pipeline

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatbox.store.types import UTCDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('queue_messages',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.String(length=128), nullable=False),
    sa.Column('deduplication_id', sa.String(length=128), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('visible_at', UTCDateTime(), nullable=False),
    sa.Column('receive_count', sa.Integer(), nullable=False),
    sa.Column('receipt', sa.String(length=64), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue_messages'))
    )
    with op.batch_alter_table('queue_messages', schema=None) as batch_op:
        batch_op.create_index('ix_queue_messages_queue_group', ['queue', 'group_id', 'id'], unique=False)
        batch_op.create_index('ix_queue_messages_queue_visible', ['queue', 'visible_at'], unique=False)

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', UTCDateTime(), nullable=True))

    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('last_success_at', UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('last_error_at', UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('last_error_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('last_success_at')
        batch_op.drop_column('consecutive_failures')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('enqueued_at')

    with op.batch_alter_table('queue_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_queue_messages_queue_visible')
        batch_op.drop_index('ix_queue_messages_queue_group')

    op.drop_table('queue_messages')

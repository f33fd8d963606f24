"""outbound_sends: each agent send recorded before the platform call, with its idempotency key and parts

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatbox.store.types import PortableJSON, UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('outbound_sends',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_digest', sa.String(length=64), nullable=False),
    sa.Column('chat_id', sa.String(length=40), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('reply_to', sa.String(length=255), nullable=True),
    sa.Column('options', PortableJSON, nullable=False),
    sa.Column('parts_sent', PortableJSON, nullable=False),
    sa.Column('parts_total', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=40), nullable=True),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempt_started_at', UTCDateTime, nullable=False),
    sa.Column('created_at', UTCDateTime, nullable=False),
    sa.Column('updated_at', UTCDateTime, nullable=False),
    sa.ForeignKeyConstraint(['chat_id'], ['chats.id'], name=op.f('fk_outbound_sends_chat_id_chats')),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_outbound_sends_connection_id_connections')),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'], name=op.f('fk_outbound_sends_mailbox_id_mailboxes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbound_sends')),
    sa.UniqueConstraint('mailbox_id', 'idempotency_key', name='uq_outbound_sends_mailbox_key')
    )


def downgrade() -> None:
    op.drop_table('outbound_sends')

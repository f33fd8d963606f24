"""service events (subscriptions, outbox, deliveries); one chat per address per mailbox

Chats were unique per connection, so archiving a connection and creating another for the same
platform split each chat in two. Existing duplicates are merged into the newest row (its messages,
deliveries and focus follow) before the new constraint is created.

Revision ID: 0007
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from chatbox.store.types import PortableJSON, UTCDateTime

revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def _merge_duplicate_chats() -> None:
    bind = op.get_bind()
    groups = bind.execute(
        sa.text(
            "SELECT mailbox_id, platform, external_id FROM chats "
            "GROUP BY mailbox_id, platform, external_id HAVING COUNT(*) > 1"
        )
    ).all()
    for mailbox_id, platform, external_id in groups:
        rows = bind.execute(
            sa.text(
                "SELECT id, unread_count FROM chats WHERE mailbox_id = :m AND platform = :p AND external_id = :e "
                "ORDER BY id DESC"
            ),
            {"m": mailbox_id, "p": platform, "e": external_id},
        ).all()
        keep = rows[0][0]
        unread = sum(int(row[1]) for row in rows)
        for (old, _unread) in rows[1:]:
            params = {"old": old, "keep": keep}
            bind.execute(sa.text("UPDATE messages SET chat_id = :keep WHERE chat_id = :old"), params)
            bind.execute(sa.text("UPDATE deliveries SET chat_id = :keep WHERE chat_id = :old"), params)
            bind.execute(sa.text("UPDATE mailboxes SET focal_chat_id = :keep WHERE focal_chat_id = :old"), params)
            bind.execute(sa.text("DELETE FROM chats WHERE id = :old"), params)
        bind.execute(sa.text("UPDATE chats SET unread_count = :u WHERE id = :keep"), {"u": unread, "keep": keep})


def upgrade() -> None:
    _merge_duplicate_chats()
    # An index rather than a constraint: SQLite adds it without rebuilding the table (which its foreign keys forbid).
    op.create_index('uq_chats_mailbox_platform_external', 'chats', ['mailbox_id', 'platform', 'external_id'], unique=True)

    op.create_table('event_subscriptions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('events', PortableJSON, nullable=False),
    sa.Column('signing_credential_id', sa.String(length=40), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_event_subscriptions_account_id_accounts')),
    sa.ForeignKeyConstraint(
        ['signing_credential_id'], ['credentials.id'],
        name=op.f('fk_event_subscriptions_signing_credential_id_credentials'),
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_subscriptions'))
    )
    with op.batch_alter_table('event_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_subscriptions_account_id'), ['account_id'], unique=False)

    op.create_table('service_events',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.String(length=40), nullable=False),
    sa.Column('mailbox_id', sa.String(length=40), nullable=True),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('data', PortableJSON, nullable=False),
    sa.Column('occurred_at', UTCDateTime(), nullable=False),
    sa.Column('fanned_out_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_service_events_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_events'))
    )
    with op.batch_alter_table('service_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_events_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_service_events_fanned_out', ['fanned_out_at', 'id'], unique=False)

    op.create_table('event_deliveries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('event_id', sa.String(length=40), nullable=False),
    sa.Column('subscription_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('delivered_at', UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['event_id'], ['service_events.id'], name=op.f('fk_event_deliveries_event_id_service_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event_deliveries')),
    sa.UniqueConstraint('event_id', 'subscription_id', name='uq_event_deliveries_event_subscription')
    )
    with op.batch_alter_table('event_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_event_deliveries_status_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_deliveries_subscription_id'), ['subscription_id'], unique=False)


def downgrade() -> None:
    op.drop_table('event_deliveries')
    op.drop_table('service_events')
    op.drop_table('event_subscriptions')
    # Chats merged on upgrade stay merged.
    op.drop_index('uq_chats_mailbox_platform_external', table_name='chats')

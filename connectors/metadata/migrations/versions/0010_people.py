"""People, roles and sharing: users (email one-time codes, optional argon2id password),
workspace memberships with a role (admin, editor, viewer), invitations, groups, folder
access lists and personal folders, user-owned API tokens, user browser sessions that can
switch workspace, an append-only audit log partitioned by month, public links and
embedding secrets.

Every secret (sign-in code, magic link, invitation, session id, public-link token) is kept
as a hash only; embedding secrets must be read back to check a signature, so they are
sealed with the installation's key like data-source secrets.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        create table meta.users (
            id               bigint generated always as identity primary key,
            -- as typed at creation; lookups go by lower(email)
            email            text not null check (length(email) between 3 and 320),
            name             text not null default '',
            -- argon2id PHC string, or null: codes only
            password_hash    text,
            created_at       timestamptz not null default now(),
            last_sign_in_at  timestamptz,
            disabled_at      timestamptz
        );
        create unique index users_email on meta.users (lower(email));

        create table meta.memberships (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            user_id       bigint not null references meta.users(id) on delete cascade,
            role          text not null check (role in ('admin', 'editor', 'viewer')),
            created_at    timestamptz not null default now(),
            updated_at    timestamptz not null default now(),
            unique (workspace_id, user_id)
        );
        create index memberships_user on meta.memberships (user_id);

        -- workspace settings the people layer reads
        alter table meta.workspaces
            add column viewers_can_query boolean not null default false,
            add column public_links_never_expire boolean not null default false,
            add column audit_retention_days integer not null default 365
                check (audit_retention_days between 1 and 36500);

        -- sign-in by email: a 6-8 digit code and a magic link, one row per request
        create table meta.email_codes (
            id          bigint generated always as identity primary key,
            email       text not null,
            -- HMAC-SHA256 (installation key) of the row's salt and the code: a dump alone
            -- does not allow trying the 10^6..10^8 codes offline
            code_hash   text not null,
            link_hash   text not null unique,
            ip          text,
            attempts    integer not null default 0,
            created_at  timestamptz not null default now(),
            expires_at  timestamptz not null,
            used_at     timestamptz
        );
        create index email_codes_email on meta.email_codes (lower(email), created_at desc);
        create index email_codes_ip on meta.email_codes (ip, created_at desc);

        -- failed sign-ins per address and per IP (passwords and codes), for rate limits
        create table meta.sign_in_failures (
            id          bigint generated always as identity primary key,
            email       text,
            ip          text,
            at          timestamptz not null default now()
        );
        create index sign_in_failures_email on meta.sign_in_failures (lower(email), at desc);
        create index sign_in_failures_ip on meta.sign_in_failures (ip, at desc);

        -- a session is a user's (in one workspace at a time) or, as before, a token's
        alter table meta.browser_sessions
            alter column token_id drop not null,
            add column user_id bigint references meta.users(id) on delete cascade,
            add column workspace_id bigint references meta.workspaces(id) on delete cascade,
            -- opened by an invitation link, not by proving the mailbox: such a session
            -- cannot set a password, make tokens or switch workspace (whoever else holds
            -- the link, the inviting admin, must not keep the person's account)
            add column via_invitation boolean not null default false,
            add constraint browser_sessions_whose
                check ((token_id is not null)
                    <> (user_id is not null and workspace_id is not null));
        create index browser_sessions_user on meta.browser_sessions (user_id)
            where user_id is not null;

        -- a login link may open a user's session (the first admin's from `sqlbook up`)
        alter table meta.login_codes
            alter column token_id drop not null,
            add column user_id bigint references meta.users(id) on delete cascade,
            add column workspace_id bigint references meta.workspaces(id) on delete cascade,
            add constraint login_codes_whose
                check ((token_id is not null)
                    <> (user_id is not null and workspace_id is not null));

        -- tokens: roles of people; a token owned by a user acts with at most its owner's
        -- role in the workspace (null owner: a service account of the workspace)
        alter table meta.api_tokens drop constraint api_tokens_role_check;
        update meta.api_tokens set role = 'editor' where role = 'member';
        alter table meta.api_tokens
            add constraint api_tokens_role_check check (role in ('admin', 'editor', 'viewer')),
            add column user_id bigint references meta.users(id) on delete cascade;
        create index api_tokens_user on meta.api_tokens (user_id) where user_id is not null;

        create table meta.invitations (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            email         text not null,
            role          text not null check (role in ('admin', 'editor', 'viewer')),
            token_hash    text not null unique,
            invited_by    text not null,
            created_at    timestamptz not null default now(),
            expires_at    timestamptz not null,
            accepted_at   timestamptz,
            accepted_by   bigint references meta.users(id) on delete set null,
            revoked_at    timestamptz
        );
        create index invitations_workspace on meta.invitations (workspace_id, created_at desc);

        create table meta.groups (
            id            bigint generated always as identity primary key,
            workspace_id  bigint not null references meta.workspaces(id) on delete cascade,
            name          text not null check (length(name) between 1 and 100),
            created_at    timestamptz not null default now()
        );
        create unique index groups_name on meta.groups (workspace_id, lower(name));
        create table meta.group_members (
            group_id       bigint not null references meta.groups(id) on delete cascade,
            membership_id  bigint not null references meta.memberships(id) on delete cascade,
            primary key (group_id, membership_id)
        );

        -- folder access: a folder whose `restricted` is false inherits its parent's access
        -- (the top level: every member by role); a restricted folder is open only to the
        -- members and groups its list names, and to admins. A personal folder belongs to
        -- one user (and is seen by admins, as in Metabase).
        alter table meta.folders
            add column restricted boolean not null default false,
            add column owner_user_id bigint references meta.users(id) on delete cascade;
        create unique index folders_personal on meta.folders (workspace_id, owner_user_id)
            where owner_user_id is not null and parent_id is null;
        create table meta.folder_permissions (
            id             bigint generated always as identity primary key,
            folder_id      bigint not null references meta.folders(id) on delete cascade,
            membership_id  bigint references meta.memberships(id) on delete cascade,
            group_id       bigint references meta.groups(id) on delete cascade,
            level          text not null check (level in ('view', 'edit')),
            check (num_nonnulls(membership_id, group_id) = 1)
        );
        create unique index folder_permissions_unique on meta.folder_permissions
            (folder_id, coalesce(membership_id, 0), coalesce(group_id, 0));

        -- who made an alert (its notifications carry only what that person may run)
        alter table meta.alerts
            add column owner_user_id bigint references meta.users(id) on delete set null,
            add column owner_token_id bigint references meta.api_tokens(id) on delete set null,
            add column created_by text;

        -- the audit log: append-only for the application (a trigger refuses UPDATE and
        -- DELETE; retention drops whole months), partitioned by month of `at`
        create table meta.audit_events (
            id             bigint generated always as identity,
            workspace_id   bigint,
            at             timestamptz not null default now(),
            actor_user_id  bigint,
            actor_token_id bigint,
            actor          text not null,
            action         text not null,
            object_type    text,
            object_id      text,
            revision       integer,
            ip             text,
            result         text not null default 'ok',
            detail         jsonb not null default '{}',
            primary key (id, at)
        ) partition by range (at);
        create index audit_events_workspace on meta.audit_events (workspace_id, at desc);
        create function meta.audit_events_append_only() returns trigger
            language plpgsql as $$
            begin
                raise exception 'meta.audit_events is append-only (% refused)', tg_op
                    using errcode = 'insufficient_privilege';
            end $$;
        create trigger audit_events_append_only
            before update or delete on meta.audit_events
            for each row execute function meta.audit_events_append_only();
        create trigger audit_events_no_truncate
            before truncate on meta.audit_events
            for each statement execute function meta.audit_events_append_only();
        -- query_audit (one row per query run) is kept the same way, except for what its
        -- foreign keys do (a removed token or data source set null, a removed workspace):
        -- those run from the referential trigger, one trigger level down
        create function meta.query_audit_append_only() returns trigger
            language plpgsql as $$
            begin
                if pg_trigger_depth() > 1 then
                    return case when tg_op = 'DELETE' then old else new end;
                end if;
                raise exception 'meta.query_audit is append-only (% refused)', tg_op
                    using errcode = 'insufficient_privilege';
            end $$;
        create trigger query_audit_append_only
            before update or delete on meta.query_audit
            for each row execute function meta.query_audit_append_only();
        -- who ran it from where, and the audit log's pages by time
        alter table meta.query_audit add column ip text;
        create index query_audit_workspace_started
            on meta.query_audit (workspace_id, started_at desc, id desc);

        -- sharing outside the workspace
        create table meta.public_links (
            id              bigint generated always as identity primary key,
            workspace_id    bigint not null references meta.workspaces(id) on delete cascade,
            object_type     text not null check (object_type in ('insight', 'dashboard')),
            object_id       bigint not null,
            token_hash      text not null unique,
            token_prefix    text not null,
            -- whose data permissions the shared view runs with
            owner_user_id   bigint references meta.users(id) on delete cascade,
            owner_token_id  bigint references meta.api_tokens(id) on delete cascade,
            created_by      text not null,
            created_at      timestamptz not null default now(),
            expires_at      timestamptz,
            revoked_at      timestamptz,
            password_hash   text,
            -- {parameter: value}: fixed; {parameter: [values]}: the choices a visitor has
            locked_params   jsonb not null default '{}',
            allowed_params  jsonb not null default '{}',
            last_viewed_at  timestamptz,
            view_count      bigint not null default 0
        );
        create index public_links_object on meta.public_links
            (workspace_id, object_type, object_id);

        create table meta.embedding_secrets (
            id               bigint generated always as identity primary key,
            workspace_id     bigint not null references meta.workspaces(id) on delete cascade,
            name             text not null check (length(name) between 1 and 100),
            -- Fernet token (installation key) of the HS256 secret
            secret_sealed    text not null,
            secret_prefix    text not null,
            -- origins allowed to frame the embeds (CSP frame-ancestors)
            frame_ancestors  text[] not null default '{}',
            owner_user_id    bigint references meta.users(id) on delete set null,
            owner_token_id   bigint references meta.api_tokens(id) on delete set null,
            created_by       text not null,
            created_at       timestamptz not null default now(),
            revoked_at       timestamptz
        );
        create index embedding_secrets_workspace on meta.embedding_secrets (workspace_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        drop table meta.embedding_secrets;
        drop table meta.public_links;
        drop trigger query_audit_append_only on meta.query_audit;
        drop function meta.query_audit_append_only();
        drop index meta.query_audit_workspace_started;
        alter table meta.query_audit drop column ip;
        drop table meta.audit_events;
        drop function meta.audit_events_append_only();
        alter table meta.alerts drop column owner_user_id, drop column owner_token_id,
            drop column created_by;
        drop table meta.folder_permissions;
        drop index meta.folders_personal;
        alter table meta.folders drop column restricted, drop column owner_user_id;
        drop table meta.group_members;
        drop table meta.groups;
        drop table meta.invitations;
        alter table meta.api_tokens drop column user_id, drop constraint api_tokens_role_check;
        update meta.api_tokens set role = 'member' where role <> 'admin';
        alter table meta.api_tokens
            add constraint api_tokens_role_check check (role in ('admin', 'member'));
        delete from meta.login_codes where token_id is null;
        alter table meta.login_codes drop constraint login_codes_whose,
            drop column user_id, drop column workspace_id,
            alter column token_id set not null;
        delete from meta.browser_sessions where token_id is null;
        alter table meta.browser_sessions drop constraint browser_sessions_whose,
            drop column user_id, drop column workspace_id,
            alter column token_id set not null;
        drop table meta.sign_in_failures;
        drop table meta.email_codes;
        alter table meta.workspaces drop column viewers_can_query,
            drop column public_links_never_expire, drop column audit_retention_days;
        drop table meta.memberships;
        drop table meta.users;
        """
    )

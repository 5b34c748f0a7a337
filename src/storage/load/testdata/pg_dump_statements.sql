-- The statements pg_dump 15 writes for kt's schema (COPY data and psql
-- meta-commands left out), as the statement filter's reference.

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE public.clients (
    fingerprint text NOT NULL,
    organization uuid NOT NULL,
    public_key bytea NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    creation timestamp with time zone DEFAULT now() NOT NULL,
    last_seen timestamp with time zone,
    CONSTRAINT clients_fingerprint_check CHECK ((fingerprint ~ '^[0-9A-F]{40}([0-9A-F]{24})?$'::text)),
    CONSTRAINT clients_state_check CHECK ((state = ANY (ARRAY['active'::text, 'disabled'::text, 'pending'::text])))
);

ALTER TABLE public.clients OWNER TO keytrustee;

CREATE TABLE public.deposits (
    uuid uuid DEFAULT gen_random_uuid() NOT NULL,
    owner text NOT NULL,
    name text NOT NULL,
    content bytea NOT NULL,
    created timestamp with time zone DEFAULT now() NOT NULL,
    updated timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.deposits OWNER TO keytrustee;

CREATE TABLE public.organizations (
    uuid uuid DEFAULT gen_random_uuid() NOT NULL,
    name text NOT NULL,
    auth_secret text DEFAULT ''::text NOT NULL,
    contacts text[] DEFAULT '{}'::text[] NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    creation timestamp with time zone DEFAULT now() NOT NULL,
    expiration timestamp with time zone,
    CONSTRAINT organizations_state_check CHECK ((state = ANY (ARRAY['active'::text, 'disabled'::text])))
);

ALTER TABLE public.organizations OWNER TO keytrustee;

CREATE TABLE public.schema_version (
    version integer NOT NULL,
    description text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE public.schema_version OWNER TO keytrustee;

CREATE FUNCTION public.touch_updated() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated := now();
    RETURN NEW;
END
$$;

ALTER FUNCTION public.touch_updated() OWNER TO keytrustee;

CREATE SEQUENCE public.events_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.events_id_seq OWNER TO keytrustee;

ALTER SEQUENCE public.events_id_seq OWNED BY public.events.id;

ALTER TABLE ONLY public.events ALTER COLUMN id SET DEFAULT nextval('public.events_id_seq'::regclass);

SELECT pg_catalog.setval('public.events_id_seq', 42, true);

COMMENT ON TABLE public.deposits IS 'deposits; of clients';

// The app's tables and their row-level security, in Drizzle: drizzle-kit turns this into the
// CREATE TABLE, ENABLE ROW LEVEL SECURITY and CREATE POLICY statements of drizzle/*.sql.
import { sql } from "drizzle-orm";
import { boolean, check, index, pgPolicy, pgRole, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";
import { user } from "./auth-schema.ts";

export * from "./auth-schema.ts";

// Created by the superuser bootstrap (src/db/bootstrap.ts); `.existing()` keeps drizzle-kit from
// managing them. The API connects as `authenticator` and switches to `authenticated` per request;
// `anon` is for clients without a token (PostGraphile, PostgREST): it can read, and sees nothing.
export const anon = pgRole("anon").existing();
export const authenticated = pgRole("authenticated").existing();

/** The caller: the `uuid` claim of the token auth_jwt verified for this transaction, NULL without one. */
const caller = sql`auth_jwt.jwt_claim_uuid()`;

export const tasks = pgTable(
  "tasks",
  {
    id: uuid().primaryKey().defaultRandom(),
    userId: uuid("user_id")
      .notNull()
      .default(caller)
      .references(() => user.uuid, { onDelete: "cascade" }),
    title: text().notNull(),
    completed: boolean().notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("tasks_user_id_idx").on(t.userId),
    check("tasks_title_check", sql`length(${t.title}) between 1 and 200`),
    // A user reads and writes only rows whose user_id is the uuid in a token PostgreSQL verified.
    pgPolicy("tasks_select", { for: "select", to: [anon, authenticated], using: sql`${t.userId} = ${caller}` }),
    pgPolicy("tasks_insert", { for: "insert", to: authenticated, withCheck: sql`${t.userId} = ${caller}` }),
    pgPolicy("tasks_update", {
      for: "update",
      to: authenticated,
      using: sql`${t.userId} = ${caller}`,
      withCheck: sql`${t.userId} = ${caller}`,
    }),
    pgPolicy("tasks_delete", { for: "delete", to: authenticated, using: sql`${t.userId} = ${caller}` }),
  ],
).enableRLS();

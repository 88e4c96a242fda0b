-- drizzle-kit cannot declare privileges, so this migration is written by hand
-- (`drizzle-kit generate --custom`). Per-table grants fail closed: a new table is out of the API's
-- reach until it has its policies and a migration like this one. Better Auth's tables (sessions,
-- password hashes, signing keys) get none.
GRANT SELECT, INSERT, UPDATE, DELETE ON "tasks" TO "authenticated";--> statement-breakpoint
GRANT SELECT ON "tasks" TO "anon";

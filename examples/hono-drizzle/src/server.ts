// npm start (after `npm run db:setup`; configuration in .env, see .env.example)
import { serve } from "@hono/node-server";
import { drizzle } from "drizzle-orm/node-postgres";
import pg from "pg";
import { createApp } from "./app.ts";
import { createAuth } from "./auth.ts";

function env(name: string, fallback?: string): string {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set (see .env.example)`);
  return value;
}

const betterAuthUrl = env("BETTER_AUTH_URL", "http://localhost:3000");
const frontendOrigins = env("FRONTEND_ORIGIN", "http://localhost:5173")
  .split(",")
  .map((o) => o.trim())
  .filter(Boolean);

const app = createApp({
  db: drizzle(new pg.Pool({ connectionString: env("DATABASE_URL"), max: Number(env("DB_POOL_MAX", "10")) })),
  auth: createAuth(drizzle(new pg.Pool({ connectionString: env("AUTH_DATABASE_URL") })), {
    baseURL: betterAuthUrl,
    secret: env("BETTER_AUTH_SECRET"),
    trustedOrigins: frontendOrigins,
  }),
  betterAuthUrl,
  frontendOrigins,
});

serve({ fetch: app.fetch, port: Number(env("PORT", "3000")) }, ({ port }) => console.log(`http://localhost:${port}`));

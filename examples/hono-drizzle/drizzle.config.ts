import { defineConfig } from "drizzle-kit";

// Migrations run as the owner of the tables (Better Auth uses the same role), never as the API's
// `authenticator`.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema.ts",
  out: "./drizzle",
  dbCredentials: { url: process.env.AUTH_DATABASE_URL! },
});

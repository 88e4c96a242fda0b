// Better Auth's tables, as its CLI generates them for this app's auth config (src/auth.ts):
//   npx auth@1.7.7 generate --config src/auth.ts --output src/db/auth-schema.ts   (Node >= 22.12)
// then edited in two places: every timestamp is `timestamptz` (as Better Auth's own migration
// creates them; auth_jwt reads "expiresAt" as timestamptz), and `user.uuid` is a real uuid column
// with a default. `camelCase: true` on the adapter keeps Better Auth's column names ("publicKey",
// "expiresAt"), which auth_jwt reads from the jwks table.
import { boolean, index, pgTable, text, timestamp, uuid } from "drizzle-orm/pg-core";

const timestamptz = (name: string) => timestamp(name, { withTimezone: true });

export const user = pgTable("user", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  email: text("email").notNull().unique(),
  emailVerified: boolean("emailVerified").default(false).notNull(),
  image: text("image"),
  createdAt: timestamptz("createdAt").defaultNow().notNull(),
  updatedAt: timestamptz("updatedAt")
    .defaultNow()
    .$onUpdate(() => new Date())
    .notNull(),
  // The app's id for the user: the `uuid` claim of every token, and what tasks.user_id references.
  // Better Auth's `sub` stays its own string id.
  uuid: uuid("uuid").notNull().unique().defaultRandom(),
});

export const session = pgTable(
  "session",
  {
    id: text("id").primaryKey(),
    expiresAt: timestamptz("expiresAt").notNull(),
    token: text("token").notNull().unique(),
    createdAt: timestamptz("createdAt").defaultNow().notNull(),
    updatedAt: timestamptz("updatedAt")
      .$onUpdate(() => new Date())
      .notNull(),
    ipAddress: text("ipAddress"),
    userAgent: text("userAgent"),
    userId: text("userId")
      .notNull()
      .references(() => user.id, { onDelete: "cascade" }),
  },
  (table) => [index("session_userId_idx").on(table.userId)],
);

export const account = pgTable(
  "account",
  {
    id: text("id").primaryKey(),
    accountId: text("accountId").notNull(),
    providerId: text("providerId").notNull(),
    userId: text("userId")
      .notNull()
      .references(() => user.id, { onDelete: "cascade" }),
    accessToken: text("accessToken"),
    refreshToken: text("refreshToken"),
    idToken: text("idToken"),
    accessTokenExpiresAt: timestamptz("accessTokenExpiresAt"),
    refreshTokenExpiresAt: timestamptz("refreshTokenExpiresAt"),
    scope: text("scope"),
    password: text("password"),
    createdAt: timestamptz("createdAt").defaultNow().notNull(),
    updatedAt: timestamptz("updatedAt")
      .$onUpdate(() => new Date())
      .notNull(),
  },
  (table) => [index("account_userId_idx").on(table.userId)],
);

export const verification = pgTable(
  "verification",
  {
    id: text("id").primaryKey(),
    identifier: text("identifier").notNull(),
    value: text("value").notNull(),
    expiresAt: timestamptz("expiresAt").notNull(),
    createdAt: timestamptz("createdAt").defaultNow().notNull(),
    updatedAt: timestamptz("updatedAt")
      .defaultNow()
      .$onUpdate(() => new Date())
      .notNull(),
  },
  (table) => [index("verification_identifier_idx").on(table.identifier)],
);

// The jwt() plugin's signing keys: auth_jwt verifies tokens against "publicKey" here.
export const jwks = pgTable("jwks", {
  id: text("id").primaryKey(),
  publicKey: text("publicKey").notNull(),
  privateKey: text("privateKey").notNull(),
  createdAt: timestamptz("createdAt").notNull(),
  expiresAt: timestamptz("expiresAt"),
  alg: text("alg"),
  crv: text("crv"),
});

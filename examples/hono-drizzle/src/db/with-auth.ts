// The one place that makes a transaction act as the caller. Everything else runs inside it.
import { DrizzleQueryError, sql } from "drizzle-orm";
import type { NodePgDatabase } from "drizzle-orm/node-postgres";
import { DatabaseError } from "pg";

export type Db = NodePgDatabase;
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

/** PostgreSQL refused the token (SQLSTATE 28000): `reason` is auth_jwt's message, such as
 *  "token has expired"; `detail` names the claim or part. Neither ever contains the token. */
export class Unauthorized extends Error {
  readonly reason: string;
  readonly detail: string | undefined;
  constructor(reason: string, detail?: string) {
    super(reason);
    this.reason = reason;
    this.detail = detail;
  }
}

/**
 * Run `fn` in one transaction as the caller: role `authenticated`, and `token` (a Better Auth JWT)
 * set for this transaction only, so every policy's auth_jwt.jwt_claim_uuid() is the caller's uuid.
 * `fn` also gets that uuid. Both settings end with the transaction, committed or rolled back: the
 * pooled connection goes back as `authenticator`, with no token, to the next request.
 */
export async function withAuth<T>(db: Db, token: string, fn: (tx: Tx, userId: string) => Promise<T>): Promise<T> {
  try {
    return await db.transaction(async (tx) => {
      await tx.execute(sql`set local role authenticated`);
      await tx.execute(sql`select set_config('auth_jwt.token', ${token}, true)`);
      // Verifies the token now, so a bad one fails before any work.
      const { rows } = await tx.execute<{ uuid: string | null }>(sql`select auth_jwt.jwt_claim_uuid() as uuid`);
      const userId = rows[0]?.uuid;
      if (!userId) throw new Unauthorized("token missing UUID (uuid claim)");
      return await fn(tx, userId);
    });
  } catch (e) {
    // Drizzle's wrapper lists the query's parameters, the token among them: keep only the driver's error.
    const cause = e instanceof DrizzleQueryError ? e.cause : e;
    if (cause instanceof DatabaseError && cause.code === "28000") {
      throw new Unauthorized(cause.message, cause.detail);
    }
    throw cause;
  }
}

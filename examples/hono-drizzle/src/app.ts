// The tasks API: routes, input validation and error mapping, as examples/fastapi does them. Which
// rows a caller may see or change is PostgreSQL's decision (RLS on auth_jwt.jwt_claim_uuid()),
// made inside withAuth; nothing here parses the token.
import { eq, sql } from "drizzle-orm";
import { Hono, type Context } from "hono";
import { cors } from "hono/cors";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import { z } from "zod";
import type { Auth } from "./auth.ts";
import { tasks } from "./db/schema.ts";
import { Unauthorized, withAuth, type Db, type Tx } from "./db/with-auth.ts";

export interface AppConfig {
  /** Connects as `authenticator`, which can do nothing but switch to `anon` or `authenticated`. */
  db: Db;
  auth: Auth;
  /** Better Auth's baseURL: 401 answers point clients at its token endpoint. */
  betterAuthUrl: string;
  /** Frontends allowed by CORS. */
  frontendOrigins: string[];
}

type Env = { Variables: { token: string } };

const Id = z.guid().transform((s) => s.toLowerCase());
const UserPath = z.object({ userId: Id });
const TaskPath = z.object({ userId: Id, taskId: Id });
// Counted in characters, as PostgreSQL's length() in the table's check; U+0000 cannot be stored
// in text, so it is bad input here rather than a server error there.
const Title = z
  .string()
  .refine((s) => [...s].length >= 1 && [...s].length <= 200, "must be 1 to 200 characters")
  .refine((s) => !s.includes("\0"), "must not contain U+0000");
const TaskCreate = z.strictObject({ title: Title, completed: z.boolean().default(false) });
// Fields may be omitted but not null: the columns are NOT NULL.
const TaskUpdate = z
  .strictObject({ title: Title.optional(), completed: z.boolean().optional() })
  .refine((body) => Object.keys(body).length > 0, "nothing to update");

/** Validates `target` against `schema`: 422 with zod's issues, or the parsed value for c.req.valid(). */
function valid<T extends "json" | "param", S extends z.ZodType>(target: T, schema: S) {
  return validator(target, (value, c) => {
    const parsed = schema.safeParse(value);
    return parsed.success ? (parsed.data as z.output<S>) : c.json({ detail: parsed.error.issues }, 422);
  });
}

// The API's JSON: the FastAPI example's field names.
const taskFields = {
  id: tasks.id,
  user_id: tasks.userId,
  title: tasks.title,
  completed: tasks.completed,
  created_at: tasks.createdAt,
  updated_at: tasks.updatedAt,
};

const taskNotFound = () => new HTTPException(404, { message: "task not found" });

export function createApp({ db, auth, betterAuthUrl, frontendOrigins }: AppConfig) {
  const tokenEndpoint = new URL("/api/auth/token", betterAuthUrl).href;

  function unauthorized(c: Context, reason: string, detail?: string) {
    c.header("WWW-Authenticate", 'Bearer realm="tasks"');
    return c.json({ error: "unauthorized", reason, ...(detail && { detail }), token_endpoint: tokenEndpoint }, 401);
  }

  const bearer = createMiddleware<Env>(async (c, next) => {
    const token = /^bearer (.*)$/is.exec(c.req.header("authorization") ?? "")?.[1]?.trim();
    if (!token) {
      return unauthorized(
        c,
        "missing bearer token",
        "Send Authorization: Bearer <token from Better Auth's /api/auth/token>.",
      );
    }
    c.set("token", token);
    await next();
  });

  /** withAuth for this request: 403 unless the path's user is the token's user. */
  function asCaller<T>(c: Context<Env>, userId: string, fn: (tx: Tx) => Promise<T>) {
    return withAuth(db, c.var.token, (tx, caller) => {
      if (caller !== userId) throw new HTTPException(403, { message: "the user in the path is not the token's user" });
      return fn(tx);
    });
  }

  const app = new Hono<Env>();
  app.use(
    "/api/*",
    cors({
      origin: frontendOrigins,
      credentials: true,
      allowMethods: ["GET", "POST", "PATCH", "DELETE"],
      allowHeaders: ["Authorization", "Content-Type"],
    }),
  );
  // Sign-up, sign-in, sessions, and GET /api/auth/token, the JWT the API takes.
  app.on(["GET", "POST"], "/api/auth/*", (c) => auth.handler(c.req.raw));

  app.get("/api/:userId/tasks", bearer, valid("param", UserPath), async (c) => {
    const { userId } = c.req.valid("param");
    return c.json(
      await asCaller(c, userId, (tx) => tx.select(taskFields).from(tasks).orderBy(tasks.createdAt, tasks.id)),
    );
  });

  app.post("/api/:userId/tasks", bearer, valid("param", UserPath), valid("json", TaskCreate), async (c) => {
    const { userId } = c.req.valid("param");
    const body = c.req.valid("json");
    const [row] = await asCaller(c, userId, (tx) =>
      tx
        .insert(tasks)
        .values({ userId, ...body })
        .returning(taskFields),
    );
    return c.json(row, 201);
  });

  app.get("/api/:userId/tasks/:taskId", bearer, valid("param", TaskPath), async (c) => {
    const { userId, taskId } = c.req.valid("param");
    const [row] = await asCaller(c, userId, (tx) => tx.select(taskFields).from(tasks).where(eq(tasks.id, taskId)));
    if (!row) throw taskNotFound();
    return c.json(row);
  });

  app.patch("/api/:userId/tasks/:taskId", bearer, valid("param", TaskPath), valid("json", TaskUpdate), async (c) => {
    const { userId, taskId } = c.req.valid("param");
    const changes = c.req.valid("json");
    const [row] = await asCaller(c, userId, (tx) =>
      tx
        .update(tasks)
        .set({ ...changes, updatedAt: sql`now()` })
        .where(eq(tasks.id, taskId))
        .returning(taskFields),
    );
    if (!row) throw taskNotFound();
    return c.json(row);
  });

  app.delete("/api/:userId/tasks/:taskId", bearer, valid("param", TaskPath), async (c) => {
    const { userId, taskId } = c.req.valid("param");
    const deleted = await asCaller(c, userId, (tx) =>
      tx.delete(tasks).where(eq(tasks.id, taskId)).returning({ id: tasks.id }),
    );
    if (deleted.length === 0) throw taskNotFound();
    return c.body(null, 204);
  });

  app.notFound((c) => c.json({ detail: "Not Found" }, 404));
  app.onError((err, c) => {
    if (err instanceof Unauthorized) return unauthorized(c, err.reason, err.detail);
    // Hono's JSON validator answers a malformed body with 400: bad input is 422 here, as in FastAPI.
    if (err instanceof HTTPException) return c.json({ detail: err.message }, err.status === 400 ? 422 : err.status);
    console.error(err);
    return c.json({ detail: "Internal Server Error" }, 500);
  });
  return app;
}

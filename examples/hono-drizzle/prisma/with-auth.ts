// withAuth for Prisma: a client extension whose every query runs as the caller.
import { Prisma } from "./generated/client.ts";

/**
 * `prisma.$extends(withAuth(token))`: each query runs in a transaction that first switches to role
 * `authenticated` and sets `token` (a Better Auth JWT), both for that transaction only, so RLS
 * sees the caller and the pooled connection is clean afterwards.
 */
export function withAuth(token: string) {
  return Prisma.defineExtension((prisma) =>
    prisma.$extends({
      query: {
        $allModels: {
          async $allOperations({ args, query }) {
            const [, , result] = await prisma.$transaction([
              prisma.$executeRaw`set local role authenticated`,
              prisma.$executeRaw`select set_config('auth_jwt.token', ${token}, true)`,
              query(args),
            ]);
            return result;
          },
        },
      },
    }),
  );
}

/**
 * auth_jwt's reason ("token has expired", "invalid token signature", ...) if PostgreSQL refused
 * the token, for a 401. Prisma reports SQLSTATE 28000 as P1010 "User was denied access on the
 * database" and keeps the database's message only on the driver adapter's error.
 */
export function tokenRefusal(e: unknown): string | undefined {
  if (!(e instanceof Prisma.PrismaClientKnownRequestError) || e.code !== "P1010") return undefined;
  const { cause } = (e.meta?.driverAdapterError ?? {}) as {
    cause?: { originalCode?: string; originalMessage?: string };
  };
  return cause?.originalCode === "28000" ? cause.originalMessage : undefined;
}

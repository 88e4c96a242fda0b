// PostGraphile 5 on the example schema, with PostgreSQL deciding who the caller is. Per request,
// the Authorization header ("Bearer <Better Auth JWT>") becomes auth_jwt.token and the role
// becomes `authenticated` (`anon` without a header), both for that request's transaction only.
// PostGraphile holds no JWT secret and verifies nothing: RLS calls auth_jwt.jwt_claim_uuid().
import type {} from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { defaultMaskError } from "postgraphile/grafserv";
import { GraphQLError } from "postgraphile/graphql";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import type { Pool } from "pg";

/** `pool` connects as `authenticator`, which may do nothing but switch to `anon` or `authenticated`. */
export function makePreset(pool: Pool): GraphileConfig.Preset {
  return {
    extends: [PostGraphileAmberPreset],
    pgServices: [makePgService({ pool, schemas: ["public"] })],
    grafast: {
      context(requestContext) {
        const authorization = requestContext.node?.req.headers.authorization;
        return {
          pgSettings: authorization ? { role: "authenticated", "auth_jwt.token": authorization } : { role: "anon" },
        };
      },
    },
    grafserv: {
      maskError(error) {
        // auth_jwt refused the token (SQLSTATE 28000): say why ("token has expired", ...); its
        // messages never contain the token. Every other database error stays masked.
        if ((error.originalError as { code?: string } | undefined)?.code !== "28000") return defaultMaskError(error);
        return new GraphQLError(error.message, {
          nodes: error.nodes,
          source: error.source,
          positions: error.positions,
          path: error.path,
          originalError: error.originalError,
          extensions: { code: "UNAUTHENTICATED" },
        });
      },
    },
  };
}

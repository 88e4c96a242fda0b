// Set up a database the way a Better Auth app would (its migrations, then auth_jwt and
// sql/example_app.sql), sign up N users with the real Better Auth, and print them with their
// JWTs as JSON. Used by the FastAPI example's tests.
//   node issue-tokens.mjs DBNAME N [EXPIRATION]      e.g. node issue-tokens.mjs app_x 50 15m

import { setup, signUp, apiToken } from "./app.mjs";

const [name, count = "2", expirationTime = "15m"] = process.argv.slice(2);
const { auth, db } = await setup(name, { expirationTime });
const users = [];
for (let i = 0; i < Number(count); i++) {
  const email = `user${i}@example.com`;
  const { user, cookie } = await signUp(auth, email);
  const { rows } = await db.query('SELECT uuid::text FROM "user" WHERE id = $1', [user.id]);
  users.push({ id: user.id, uuid: rows[0].uuid, email, cookie, token: await apiToken(auth, cookie) });
}
await db.end();
process.stdout.write(JSON.stringify(users));

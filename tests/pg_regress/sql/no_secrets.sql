-- No message, detail or hint contains the token, its signature or key material, whatever
-- the failure (checked by looking for the first 12 characters of each).
begin;
create function t.leaks(tok text, secrets text[]) returns text language plpgsql as $$
declare msg text; det text; hnt text; s text;
begin
  perform auth_jwt.jwt_verify(tok);
  return 'accepted';
exception when others then
  get stacked diagnostics msg = message_text, det = pg_exception_detail, hnt = pg_exception_hint;
  foreach s in array secrets || array[split_part(tok, '.', 1), split_part(tok, '.', 2), split_part(tok, '.', 3)] loop
    if length(s) >= 12 and strpos(msg || ' ' || coalesce(det, '') || ' ' || coalesce(hnt, ''), left(s, 12)) > 0 then
      return 'LEAK: ' || msg;
    end if;
  end loop;
  return 'clean: ' || msg;
end $$;
\set jwk1 `"$MINT" jwk 1`
\set ok `"$MINT" token 1`
\set expired `"$MINT" token 1 exp=-1000`
\set forged `"$MINT" token 2 kid=k1`
\set evil_iss `"$MINT" token 1 iss=https://evil.example.com`
\set unknown `"$MINT" token 1 kid=nope`
\set hs `"$MINT" token 1 'header={"alg":"HS256","kid":"k1"}'`
select t.leaks(tok, array[:'jwk1'::jsonb->>'x', 'encrypted-private-key'])
  from unnest(array[:'expired', :'forged', :'evil_iss', :'unknown', :'hs',
                    :'ok' || 'x', left(:'ok', 60), :'ok' || '.' || :'ok',
                    replace(:'ok', '.', '..'), 'Bearer ' || :'ok']) as tok;
rollback;

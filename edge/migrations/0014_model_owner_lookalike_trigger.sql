-- A new name is refused in the very transaction that claims it when another owner holds a name
-- differing only in letter case (0010_model_owner_case.sql). checkOwner (edge/src/models/registry.ts)
-- refuses it before, but two publishers claiming `Case-x` and `case-x` at the same moment both
-- passed that check: an audit saw both claims succeed in 4 of 15 rounds. Names a deployment
-- already holds are not touched (the index stays non-unique).
CREATE TRIGGER model_owners_no_lookalike BEFORE INSERT ON model_owners
WHEN EXISTS (SELECT 1 FROM model_owners o WHERE lower(o.name) = lower(NEW.name) AND o.name != NEW.name AND o.owner != NEW.owner)
BEGIN
  SELECT RAISE(ABORT, 'model name look-alike owned by another publisher');
END;

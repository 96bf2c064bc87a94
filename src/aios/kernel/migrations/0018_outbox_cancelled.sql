-- An outbox row can be cancelled: the run that asked for the effect no longer needs it (a
-- gate's email after the gate was decided) and no attempt finished it. A later attempt of the
-- same key runs nothing, and the row is not an effect in doubt.
-- depends: 0017_posts

ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('pending', 'done', 'cancelled'));

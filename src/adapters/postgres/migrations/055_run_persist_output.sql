-- A run may ask for its text output to be appended to the session's history when it ends
-- (`persist_output`, issue 11): the finalizing transaction (run-apply) reads it from the run row.
ALTER TABLE runs ADD COLUMN persist_output boolean NOT NULL DEFAULT false;

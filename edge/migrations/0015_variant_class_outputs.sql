-- The outputs a variant's top-1 agreement was judged on (issue 6): those its publisher named
-- (`--class-output`), else every output with a class axis, as a JSON array of output names. NULL
-- for variants published before it was recorded: their publishers did not say.
ALTER TABLE model_variants ADD COLUMN class_outputs_json TEXT;

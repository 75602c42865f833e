-- The outputs a variant's top-1 agreement was judged on (issue 6), when its publisher named them
-- (`--class-output`), as a JSON array of output names. NULL otherwise: every output with a top-1
-- agreement was judged, as for the variants published before this column.
ALTER TABLE model_variants ADD COLUMN class_outputs_json TEXT;

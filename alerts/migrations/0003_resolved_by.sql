-- Who resolved an alert by hand, apart from who acknowledged it (a resolution no longer overwrites acked_by).
ALTER TABLE alerts ADD COLUMN resolved_by TEXT;
UPDATE alerts SET resolved_by = acked_by WHERE state = 'resolved' AND acked_by IS NOT NULL;

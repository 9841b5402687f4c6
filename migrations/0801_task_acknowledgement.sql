-- Maintenance tasks acknowledged on the floor (ADR 0050): who saw the task first, and when.
ALTER TABLE rm_maintenance_tasks ADD COLUMN acknowledged_by text;
ALTER TABLE rm_maintenance_tasks ADD COLUMN acknowledged_at timestamptz;

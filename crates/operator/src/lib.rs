//! reportjob's operator: the controller that runs a ReportJob's stages as Jobs and keeps its
//! status, and the ReportSchedule controller. It depends on the core alone: it schedules the
//! engine's stages in pods (the `reportjob` binary's stage commands) but cannot read the
//! database, the staged parts or the report itself, and the compiler keeps it that way.

pub mod controller;

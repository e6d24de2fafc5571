//! reportjob's operator: the controller that runs a ReportJob's stages as Jobs and keeps its
//! status, the ReportSchedule controller, and completion notifications. It schedules the
//! engine's stages (`reportjob-engine`) and never reads the database or the report itself.

pub mod controller;
pub mod notify;

//! `output.format: xlsx`: chunks are exported in parallel as `COPY` text parts (a typed
//! intermediate form: the column types are in the plan), and assembly re-encodes them in
//! one pass, with bounded memory, into one workbook (see [`cell`] for what each value
//! becomes, [`workbook`] for sheets and limits).

pub mod assemble;
pub mod cell;
pub mod copy_text;
pub mod workbook;

//! `output.format: xlsx`, a workbook written in parallel: each chunk worker encodes its rows
//! as sheet XML and deflates them ([`part_stream`], [`sheet_xml`], with [`cell`] deciding
//! what each value becomes), and assembly copies the compressed parts into the sheets of
//! one zip archive ([`assemble`], [`sheets`], [`package`], [`zip_writer`]) without decoding
//! a row.

pub mod assemble;
pub mod cell;
pub mod copy_text;
pub mod package;
pub mod part_stream;
pub mod sheet_xml;
pub mod sheets;
pub mod zip_writer;

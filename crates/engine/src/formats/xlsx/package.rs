//! Pure: the small XML parts of a workbook around its sheets (content types, relationships,
//! the workbook with its sheet names, the fixed styles), as `(zip entry name, bytes)`.

use super::sheet_xml::escape_text;

/// The zip entry name of sheet `n` (from 1).
pub fn sheet_entry(n: usize) -> String {
    format!("xl/worksheets/sheet{n}.xml")
}

const XML_DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n";
const RELATIONSHIPS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const OFFICE_RELS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";

/// The cell styles [`super::sheet_xml::Style`] names, in `cellXfs` order: default, bold
/// (the header), `yyyy-mm-dd`, `yyyy-mm-dd hh:mm:ss.000`.
pub const STYLES: &str = concat!(
    "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\r\n",
    "<styleSheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">",
    "<numFmts count=\"2\"><numFmt numFmtId=\"164\" formatCode=\"yyyy-mm-dd\"/>",
    "<numFmt numFmtId=\"165\" formatCode=\"yyyy-mm-dd hh:mm:ss.000\"/></numFmts>",
    "<fonts count=\"2\"><font><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font>",
    "<font><b/><sz val=\"11\"/><name val=\"Calibri\"/><family val=\"2\"/></font></fonts>",
    "<fills count=\"2\"><fill><patternFill patternType=\"none\"/></fill>",
    "<fill><patternFill patternType=\"gray125\"/></fill></fills>",
    "<borders count=\"1\"><border><left/><right/><top/><bottom/><diagonal/></border></borders>",
    "<cellStyleXfs count=\"1\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\"/></cellStyleXfs>",
    "<cellXfs count=\"4\"><xf numFmtId=\"0\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\"/>",
    "<xf numFmtId=\"0\" fontId=\"1\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyFont=\"1\"/>",
    "<xf numFmtId=\"164\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyNumberFormat=\"1\"/>",
    "<xf numFmtId=\"165\" fontId=\"0\" fillId=\"0\" borderId=\"0\" xfId=\"0\" applyNumberFormat=\"1\"/>",
    "</cellXfs><cellStyles count=\"1\"><cellStyle name=\"Normal\" xfId=\"0\" builtinId=\"0\"/>",
    "</cellStyles><dxfs count=\"0\"/><tableStyles count=\"0\" defaultTableStyle=\"TableStyleMedium9\" ",
    "defaultPivotStyle=\"PivotStyleLight16\"/></styleSheet>"
);

/// The parts of a workbook whose sheets are named `sheet_names` (checked), in the order its
/// zip directory lists them (content types first, as Office writes them).
pub fn parts(sheet_names: &[String]) -> Vec<(String, Vec<u8>)> {
    let sheets = 1..=sheet_names.len();
    let mut types = format!(
        "{XML_DECLARATION}<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
         <Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/>\
         <Override PartName=\"/xl/styles.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml\"/>"
    );
    for n in sheets.clone() {
        types.push_str(&format!(
            "<Override PartName=\"/{}\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/>",
            sheet_entry(n)
        ));
    }
    types.push_str("</Types>");
    let root_rels = format!(
        "{XML_DECLARATION}<Relationships xmlns=\"{RELATIONSHIPS}\">\
         <Relationship Id=\"rId1\" Type=\"{OFFICE_RELS}/officeDocument\" Target=\"xl/workbook.xml\"/>\
         </Relationships>"
    );
    let mut workbook = format!(
        "{XML_DECLARATION}<workbook xmlns=\"{MAIN}\" xmlns:r=\"{OFFICE_RELS}\">\
         <bookViews><workbookView/></bookViews><sheets>"
    );
    let mut book_rels = format!("{XML_DECLARATION}<Relationships xmlns=\"{RELATIONSHIPS}\">");
    for (n, name) in sheets.zip(sheet_names) {
        workbook.push_str(&format!(
            "<sheet name=\"{}\" sheetId=\"{n}\" r:id=\"rId{n}\"/>",
            attribute(name)
        ));
        book_rels.push_str(&format!(
            "<Relationship Id=\"rId{n}\" Type=\"{OFFICE_RELS}/worksheet\" Target=\"worksheets/sheet{n}.xml\"/>"
        ));
    }
    workbook.push_str("</sheets></workbook>");
    book_rels.push_str(&format!(
        "<Relationship Id=\"rId{}\" Type=\"{OFFICE_RELS}/styles\" Target=\"styles.xml\"/>\
         </Relationships>",
        sheet_names.len() + 1
    ));
    vec![
        ("[Content_Types].xml".into(), types.into_bytes()),
        ("_rels/.rels".into(), root_rels.into_bytes()),
        ("xl/workbook.xml".into(), workbook.into_bytes()),
        ("xl/_rels/workbook.xml.rels".into(), book_rels.into_bytes()),
        ("xl/styles.xml".into(), STYLES.as_bytes().to_vec()),
    ]
}

/// `text` escaped for a double-quoted XML attribute.
fn attribute(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    escape_text(text, &mut out);
    String::from_utf8_lossy(&out).replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workbook_names_each_sheet_and_relates_it_to_its_entry() {
        let parts = parts(&["A \"q\" & b".into(), "A \"q\" & b (2)".into()]);
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "[Content_Types].xml",
                "_rels/.rels",
                "xl/workbook.xml",
                "xl/_rels/workbook.xml.rels",
                "xl/styles.xml"
            ]
        );
        let text = |i: usize| String::from_utf8(parts[i].1.clone()).unwrap();
        assert!(text(0).contains("PartName=\"/xl/worksheets/sheet2.xml\""));
        assert!(
            text(2).contains(
                "<sheet name=\"A &quot;q&quot; &amp; b (2)\" sheetId=\"2\" r:id=\"rId2\"/>"
            )
        );
        assert!(text(3).contains("Id=\"rId3\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles\""));
    }
}

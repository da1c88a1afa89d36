//! Rules the contract keeps, checked on the compiled descriptors so that a
//! later edit of the .proto files cannot quietly break them: every service,
//! method, message, field, oneof, enum and enum value carries a comment, and
//! every enum starts with `<ENUM_NAME>_UNSPECIFIED = 0`.

use lb_proto::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorSet, source_code_info::Location,
};

// Field numbers inside descriptor.proto, used to build source-info paths.
const FILE_MESSAGE_TYPE: i32 = 4;
const FILE_ENUM_TYPE: i32 = 5;
const FILE_SERVICE: i32 = 6;
const MESSAGE_FIELD: i32 = 2;
const MESSAGE_NESTED_TYPE: i32 = 3;
const MESSAGE_ENUM_TYPE: i32 = 4;
const MESSAGE_ONEOF_DECL: i32 = 8;
const ENUM_VALUE: i32 = 2;
const SERVICE_METHOD: i32 = 2;

struct Checker<'a> {
    file: &'a str,
    locations: &'a [Location],
    undocumented: Vec<String>,
}

impl Checker<'_> {
    fn require(&mut self, path: &[i32], what: String) {
        let documented = self
            .locations
            .iter()
            .any(|l| l.path == path && !l.leading_comments().trim().is_empty());
        if !documented {
            self.undocumented.push(format!("{}: {what}", self.file));
        }
    }

    fn check_enum(&mut self, path: Vec<i32>, e: &EnumDescriptorProto, scope: &str) {
        let name = format!("{scope}.{}", e.name());
        self.require(&path, format!("enum {name}"));
        for (i, v) in e.value.iter().enumerate() {
            let mut p = path.clone();
            p.extend([ENUM_VALUE, i as i32]);
            self.require(&p, format!("enum value {name}.{}", v.name()));
        }
    }

    fn check_message(&mut self, path: Vec<i32>, m: &DescriptorProto, scope: &str) {
        let name = format!("{scope}.{}", m.name());
        self.require(&path, format!("message {name}"));
        for (i, f) in m.field.iter().enumerate() {
            let mut p = path.clone();
            p.extend([MESSAGE_FIELD, i as i32]);
            self.require(&p, format!("field {name}.{}", f.name()));
        }
        for (i, o) in m.oneof_decl.iter().enumerate() {
            // proto3 `optional` makes a synthetic oneof that has no comment.
            if o.name().starts_with('_') {
                continue;
            }
            let mut p = path.clone();
            p.extend([MESSAGE_ONEOF_DECL, i as i32]);
            self.require(&p, format!("oneof {name}.{}", o.name()));
        }
        for (i, nested) in m.nested_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([MESSAGE_NESTED_TYPE, i as i32]);
            self.check_message(p, nested, &name);
        }
        for (i, e) in m.enum_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([MESSAGE_ENUM_TYPE, i as i32]);
            self.check_enum(p, e, &name);
        }
    }
}

fn descriptors() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

#[test]
fn every_element_is_documented() {
    let fds = descriptors();
    let mut undocumented = vec![];
    for file in &fds.file {
        let locations = &file
            .source_code_info
            .as_ref()
            .expect("source info")
            .location;
        let mut c = Checker {
            file: file.name(),
            locations,
            undocumented: vec![],
        };
        let pkg = file.package();
        for (i, m) in file.message_type.iter().enumerate() {
            c.check_message(vec![FILE_MESSAGE_TYPE, i as i32], m, pkg);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            c.check_enum(vec![FILE_ENUM_TYPE, i as i32], e, pkg);
        }
        for (i, s) in file.service.iter().enumerate() {
            c.require(&[FILE_SERVICE, i as i32], format!("service {}", s.name()));
            for (j, m) in s.method.iter().enumerate() {
                c.require(
                    &[FILE_SERVICE, i as i32, SERVICE_METHOD, j as i32],
                    format!("rpc {}.{}", s.name(), m.name()),
                );
            }
        }
        undocumented.extend(c.undocumented);
    }
    assert!(
        undocumented.is_empty(),
        "undocumented elements:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn every_enum_starts_with_unspecified_zero() {
    fn screaming_snake(name: &str) -> String {
        let mut out = String::new();
        for (i, ch) in name.chars().enumerate() {
            if ch.is_ascii_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_uppercase());
        }
        out
    }
    fn check(e: &EnumDescriptorProto, bad: &mut Vec<String>) {
        let first = &e.value[0];
        let want = format!("{}_UNSPECIFIED", screaming_snake(e.name()));
        if first.number() != 0 || first.name() != want {
            bad.push(format!(
                "{}: first value {} = {}",
                e.name(),
                first.name(),
                first.number()
            ));
        }
        let prefix = format!("{}_", screaming_snake(e.name()));
        for v in &e.value {
            if !v.name().starts_with(&prefix) {
                bad.push(format!(
                    "{}.{} lacks the {prefix} prefix",
                    e.name(),
                    v.name()
                ));
            }
        }
    }
    fn walk(m: &DescriptorProto, bad: &mut Vec<String>) {
        m.enum_type.iter().for_each(|e| check(e, bad));
        m.nested_type.iter().for_each(|n| walk(n, bad));
    }
    let mut bad = vec![];
    for file in &descriptors().file {
        file.enum_type.iter().for_each(|e| check(e, &mut bad));
        file.message_type.iter().for_each(|m| walk(m, &mut bad));
    }
    assert!(bad.is_empty(), "enum rule broken:\n{}", bad.join("\n"));
}

//! Checks that a schema covers a GraphQL contract: every type, field,
//! argument and enum value the contract names exists with exactly the
//! contract's type. Extra types, fields and optional arguments are allowed.
//!
//! Usage: cargo run --example contract_check -- <contract.graphql> <schema.graphql>

#![allow(clippy::print_stdout, reason = "its report is its output")]

use std::collections::BTreeMap;
use std::process::ExitCode;

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

/// What one type offers, flattened to comparable strings.
#[derive(Default)]
struct TypeShape {
    kind: &'static str,
    /// field or input field -> its type
    fields: BTreeMap<String, String>,
    /// (field, argument) -> its type
    arguments: BTreeMap<(String, String), String>,
    values: Vec<String>,
}

fn shapes(sdl: &str) -> Result<BTreeMap<String, TypeShape>, String> {
    let document = parse_schema(sdl).map_err(|e| e.to_string())?;
    let mut shapes = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = definition.node;
        let mut shape = TypeShape::default();
        match definition.kind {
            TypeKind::Scalar => shape.kind = "scalar",
            TypeKind::Enum(enumeration) => {
                shape.kind = "enum";
                shape.values = enumeration
                    .values
                    .iter()
                    .map(|v| v.node.value.node.to_string())
                    .collect();
            }
            TypeKind::Object(object) => {
                shape.kind = "type";
                for field in object.fields {
                    let field = field.node;
                    let name = field.name.node.to_string();
                    for argument in field.arguments {
                        let argument = argument.node;
                        shape.arguments.insert(
                            (name.clone(), argument.name.node.to_string()),
                            argument.ty.node.to_string(),
                        );
                    }
                    shape.fields.insert(name, field.ty.node.to_string());
                }
            }
            TypeKind::InputObject(input) => {
                shape.kind = "input";
                for field in input.fields {
                    shape.fields.insert(
                        field.node.name.node.to_string(),
                        field.node.ty.node.to_string(),
                    );
                }
            }
            TypeKind::Interface(_) => shape.kind = "interface",
            TypeKind::Union(_) => shape.kind = "union",
        }
        shapes.insert(definition.name.node.to_string(), shape);
    }
    Ok(shapes)
}

fn differences(
    contract: &BTreeMap<String, TypeShape>,
    ours: &BTreeMap<String, TypeShape>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, wanted) in contract {
        let Some(have) = ours.get(name) else {
            problems.push(format!("missing {} {name}", wanted.kind));
            continue;
        };
        if have.kind != wanted.kind {
            problems.push(format!(
                "{name} is a {} but the contract says {}",
                have.kind, wanted.kind
            ));
        }
        for (field, ty) in &wanted.fields {
            match have.fields.get(field) {
                None => problems.push(format!("missing field {name}.{field}: {ty}")),
                Some(actual) if actual != ty => problems.push(format!(
                    "{name}.{field} is {actual}, the contract says {ty}"
                )),
                Some(_) => {}
            }
        }
        for ((field, argument), ty) in &wanted.arguments {
            match have.arguments.get(&(field.clone(), argument.clone())) {
                None => problems.push(format!("missing argument {name}.{field}({argument}: {ty})")),
                Some(actual) if actual != ty => problems.push(format!(
                    "{name}.{field}({argument}) is {actual}, the contract says {ty}"
                )),
                Some(_) => {}
            }
        }
        for ((field, argument), ty) in &have.arguments {
            let extra = !wanted
                .arguments
                .contains_key(&(field.clone(), argument.clone()));
            if extra && wanted.fields.contains_key(field) && ty.ends_with('!') {
                problems.push(format!(
                    "{name}.{field} requires {argument}, which the contract does not have"
                ));
            }
        }
        for value in &wanted.values {
            if !have.values.contains(value) {
                problems.push(format!("missing enum value {name}.{value}"));
            }
        }
    }
    problems
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, contract_path, schema_path] = args.as_slice() else {
        eprintln!("usage: contract_check <contract.graphql> <schema.graphql>");
        return ExitCode::from(2);
    };
    let read = |path: &String| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let parsed = read(contract_path)
        .and_then(|text| shapes(&text))
        .and_then(|contract| Ok((contract, read(schema_path).and_then(|text| shapes(&text))?)));
    let (contract, ours) = match parsed {
        Ok(both) => both,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let problems = differences(&contract, &ours);
    if problems.is_empty() {
        println!("{schema_path} covers every name and type of {contract_path}");
        return ExitCode::SUCCESS;
    }
    for problem in &problems {
        println!("{problem}");
    }
    ExitCode::FAILURE
}

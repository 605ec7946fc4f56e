; Definitions and references for Python.
(class_definition name: (identifier) @name.definition.class)
(function_definition name: (identifier) @name.definition.function)
(module (expression_statement (assignment left: (identifier) @name.definition.constant)))

(class_definition superclasses: (argument_list (identifier) @name.reference.class))
(call function: (identifier) @name.reference.call)
(call function: (attribute attribute: (identifier) @name.reference.call))
(decorator (identifier) @name.reference.call)
(decorator (attribute attribute: (identifier) @name.reference.call))
(import_from_statement name: (dotted_name (identifier) @name.reference.import))
(aliased_import name: (dotted_name (identifier) @name.reference.import))
(type (identifier) @name.reference.type)
(generic_type (identifier) @name.reference.type)
(type (binary_operator left: (identifier) @name.reference.type))
(type (binary_operator right: (identifier) @name.reference.type))
; Capitalised names used as values: classes and constants passed around or used as namespaces.
((attribute object: (identifier) @name.reference.class) (#match? @name.reference.class "^[A-Z]"))
((argument_list (identifier) @name.reference.class) (#match? @name.reference.class "^[A-Z]"))

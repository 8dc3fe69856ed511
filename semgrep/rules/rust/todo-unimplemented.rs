fn parse(input: &str) -> u32 {
    // ruleid: chum.rust.todo-unimplemented
    todo!()
}

fn render(value: u32) -> String {
    // ruleid: chum.rust.todo-unimplemented
    unimplemented!("later")
}

fn double(value: u32) -> u32 {
    // ok: chum.rust.todo-unimplemented
    value * 2
}

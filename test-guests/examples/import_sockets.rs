//! Opens a TCP connection in `train`, so the component imports wasi:sockets:
//! refused before instantiation.
test_guests::hostile_algorithm!("import-sockets", |model, table, seed| {
    let stream = std::net::TcpStream::connect("127.0.0.1:9");
    std::hint::black_box(&stream);
    Ok(test_guests::zero_update(model))
});

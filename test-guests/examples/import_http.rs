//! Sends an HTTP request in `train`, so the component imports
//! wasi:http/outgoing-handler: refused before instantiation.
test_guests::hostile_algorithm!("import-http", |model, table, seed| {
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::http::{outgoing_handler, types};
        let request = types::OutgoingRequest::new(types::Fields::new());
        let _ = request.set_authority(Some("collector.example:80"));
        let sent = outgoing_handler::handle(request, None);
        std::hint::black_box(&sent);
    }
    Ok(test_guests::zero_update(model))
});

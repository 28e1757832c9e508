//! The network's autograd gradients against central finite differences, in F64.

use candle_core::{DType, Device, Tensor, Var};
use sconce_train::data::Targets;
use sconce_train::fit::gradients;
use sconce_train::loss::{Examples, LossKind, data_loss, weight_penalty};
use sconce_train::model::{Activation, LayerConfig, Network};

fn objective(network: &Network, examples: &Examples, loss: LossKind, l1: f64, l2: f64) -> Tensor {
    let pre_output = network
        .forward_without_output_activation(&examples.inputs)
        .expect("forward");
    let mut total = data_loss(
        loss,
        &pre_output,
        network.output_activation(),
        &examples.targets,
    )
    .expect("loss");
    if let Some(penalty) = weight_penalty(network, l1, l2).expect("penalty") {
        total = (total + penalty).expect("add");
    }
    total
}

fn set_element(param: &Var, index: usize, value: f64) {
    let shape = param.shape().clone();
    let mut values = param
        .as_tensor()
        .flatten_all()
        .and_then(|t| t.to_vec1::<f64>())
        .expect("values");
    values[index] = value;
    param
        .set(&Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor"))
        .expect("set");
}

/// Max relative error between autograd and (f(w+h) - f(w-h)) / 2h over every parameter element.
fn max_relative_error(
    network: &Network,
    examples: &Examples,
    loss: LossKind,
    l1: f64,
    l2: f64,
) -> f64 {
    let params = network.parameters();
    let analytic = gradients(&objective(network, examples, loss, l1, l2), &params).expect("grads");
    let step = 1e-6;
    let mut worst = 0f64;
    for (param, grad) in params.iter().zip(&analytic) {
        let grad = grad
            .flatten_all()
            .and_then(|t| t.to_vec1::<f64>())
            .expect("grad");
        let original = param
            .as_tensor()
            .flatten_all()
            .and_then(|t| t.to_vec1::<f64>())
            .expect("values");
        for (index, &w) in original.iter().enumerate() {
            set_element(param, index, w + step);
            let plus = objective(network, examples, loss, l1, l2)
                .to_scalar::<f64>()
                .expect("scalar");
            set_element(param, index, w - step);
            let minus = objective(network, examples, loss, l1, l2)
                .to_scalar::<f64>()
                .expect("scalar");
            set_element(param, index, w);
            let numeric = (plus - minus) / (2.0 * step);
            let error =
                (numeric - grad[index]).abs() / (numeric.abs() + grad[index].abs()).max(1e-8);
            worst = worst.max(error);
        }
    }
    worst
}

fn inputs(rows: usize, width: usize) -> Vec<f32> {
    (0..rows * width)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 5.0)
        .collect()
}

fn network(hidden: Activation, output: Activation, outputs: usize) -> Network {
    let layers = [
        LayerConfig {
            name: "dense_0".into(),
            units: 5,
            activation: hidden,
        },
        LayerConfig {
            name: "dense_1".into(),
            units: 4,
            activation: Activation::Sigmoid,
        },
        LayerConfig {
            name: "dense_2".into(),
            units: outputs,
            activation: output,
        },
    ];
    let network = Network::init(3, &layers, 5, DType::F64, &Device::Cpu).expect("init");
    // Non-zero biases so every term of the gradient is exercised.
    for (i, layer) in network.layers.iter().enumerate() {
        let units = layer.bias.dims()[0];
        let bias: Vec<f64> = (0..units).map(|u| 0.1 * (u as f64 - i as f64)).collect();
        layer
            .bias
            .set(&Tensor::from_vec(bias, units, &Device::Cpu).expect("bias"))
            .expect("set");
    }
    network
}

#[test]
fn cross_entropy_gradients_match_finite_differences() {
    let targets = Targets::Classes {
        ids: vec![0, 2, 1, 2, 0, 1],
        names: vec!["a".into(), "b".into(), "c".into()],
    };
    let examples = Examples::new(inputs(6, 3), 3, &targets, DType::F64).expect("examples");
    for hidden in [
        Activation::Tanh,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Linear,
    ] {
        let net = network(hidden, Activation::Softmax, 3);
        let error = max_relative_error(&net, &examples, LossKind::CrossEntropy, 0.0, 0.0);
        assert!(error < 1e-5, "{hidden:?}: relative error {error}");
    }
}

#[test]
fn mse_gradients_with_l1_and_l2_penalties_match_finite_differences() {
    let targets = Targets::Values(vec![0.5, -1.0, 2.0, 0.0, 1.5]);
    let examples = Examples::new(inputs(5, 3), 3, &targets, DType::F64).expect("examples");
    let net = network(Activation::Tanh, Activation::Linear, 1);
    let error = max_relative_error(&net, &examples, LossKind::Mse, 0.01, 0.05);
    assert!(error < 1e-5, "relative error {error}");
    let net = network(Activation::Tanh, Activation::Softmax, 3);
    let targets = Targets::Classes {
        ids: vec![0, 1, 2, 1, 0],
        names: vec!["a".into(), "b".into(), "c".into()],
    };
    let examples = Examples::new(inputs(5, 3), 3, &targets, DType::F64).expect("examples");
    let error = max_relative_error(&net, &examples, LossKind::CrossEntropy, 0.02, 0.03);
    assert!(error < 1e-5, "relative error {error}");
}
